<#
.SYNOPSIS
    Installs what is missing into .venv, then starts Video Studio (Windows twin of install.sh + run.sh).
.DESCRIPTION
    Finds Python 3.10-3.12 (py -3.12, py -3.11, py -3.10, python, python3), creates .venv in the repository
    root, installs the torch build that fits this machine (CUDA wheel matched to the NVIDIA driver and GPUs,
    CPU build otherwise), then requirements.txt, and starts app.py with every argument not named below.
    A stamp in .venv (of this script, the requirements and the choices) skips pip while nothing changed, so
    later starts are fast.
    Environment: PYTHON (python.exe to use), TORCH_INDEX_BASE (PyTorch wheel index root).
.PARAMETER Update
    Upgrade torch and the requirements even when the stamp says nothing changed.
.PARAMETER DryRun
    Print the Python and torch choice, install nothing.
.PARAMETER Cpu
    Use the CPU build of torch even when an NVIDIA GPU is present.
.PARAMETER Shortcut
    Put a "Video Studio" shortcut on the desktop (run.bat with the other arguments and switches) and stop.
.EXAMPLE
    installer\run.bat --port 7860 --share
.EXAMPLE
    installer\run.bat -Shortcut --outputs D:\videos
#>
param(
    [switch]$Update,
    [switch]$DryRun,
    [switch]$Cpu,
    [switch]$Shortcut
)
# No [CmdletBinding()]: unbound arguments (the app's --flags) must land in $args.
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$TorchCpuVersion = '2.13.0'  # CPU build pinned when the CPU wheel index is unreachable (PyPI's is CPU-only)
$TorchIndexBase = 'https://download.pytorch.org/whl'
if ($env:TORCH_INDEX_BASE) { $TorchIndexBase = $env:TORCH_INDEX_BASE }
$ProbeTimeoutS = 5

$Root = Split-Path -Parent $PSScriptRoot
$Venv = Join-Path $Root '.venv'
$VenvPy = Join-Path $Venv 'Scripts\python.exe'
$TorchPin = Join-Path $Venv 'torch-constraint.txt'  # the installed torch, kept by the requirements install
$PythonCheck = 'import sys; assert (3, 10) <= sys.version_info[:2] <= (3, 12); print(sys.executable)'
$AppArgs = @($args)

function Write-Log([string]$Message) { Write-Host "[install] $Message" }

function Stop-WithError([string]$Message) {
    Write-Host "[install] ERROR: $Message" -ForegroundColor Red
    exit 1
}

# Runs a native command quietly: its stdout lines and exit code (-1 when it could not start); stderr dropped.
function Invoke-Native([string]$Exe, [string[]]$Arguments) {
    $previous = $ErrorActionPreference
    $ErrorActionPreference = 'Continue'
    try {
        $lines = @(& $Exe @Arguments 2>$null)
        return [pscustomobject]@{ Code = $LASTEXITCODE; Lines = $lines }
    } catch {
        return [pscustomobject]@{ Code = -1; Lines = @() }
    } finally {
        $ErrorActionPreference = $previous
    }
}

# The real path of the first interpreter that runs and is Python 3.10-3.12.
function Find-Python {
    $candidates = @(
        @{ Exe = 'py'; Args = @('-3.12') },
        @{ Exe = 'py'; Args = @('-3.11') },
        @{ Exe = 'py'; Args = @('-3.10') },
        @{ Exe = 'python'; Args = @() },
        @{ Exe = 'python3'; Args = @() }
    )
    if ($env:PYTHON) { $candidates = @(@{ Exe = $env:PYTHON; Args = @() }) }
    foreach ($candidate in $candidates) {
        if (-not (Get-Command $candidate.Exe -ErrorAction SilentlyContinue)) { continue }
        $result = Invoke-Native -Exe $candidate.Exe -Arguments (@($candidate.Args) + @('-c', $PythonCheck))
        if ($result.Code -eq 0 -and $result.Lines.Count -gt 0) { return ([string]$result.Lines[-1]).Trim() }
    }
    Stop-WithError ("no Python 3.10, 3.11 or 3.12 found (tried py -3.12, -3.11, -3.10, python, python3). " +
        "Install one from python.org (tick 'Add python.exe to PATH'), or set PYTHON to its python.exe.")
}

function Get-PythonVersion([string]$Python) {
    $code = 'import platform; print(platform.python_version())'
    $result = Invoke-Native -Exe $Python -Arguments @('-c', $code)
    return ($result.Lines -join '').Trim()
}

function Get-GpuCount {
    if (-not (Get-Command nvidia-smi -ErrorAction SilentlyContinue)) { return 0 }
    $result = Invoke-Native -Exe 'nvidia-smi' -Arguments @('-L')
    return @($result.Lines | Where-Object { $_ -match '^GPU ' }).Count
}

function Get-DriverCudaVersion {
    $result = Invoke-Native -Exe 'nvidia-smi' -Arguments @()
    foreach ($line in $result.Lines) {
        if ($line -match 'CUDA Version:\s*(\d+)\.(\d+)') { return "$($Matches[1]).$($Matches[2])" }
    }
    return ''
}

# Maps the driver's CUDA version (e.g. 12.8) to the newest PyTorch CUDA wheel tag it can run.
function Get-CudaWheelTag([string]$Version) {
    $major, $minor = $Version.Split('.') | ForEach-Object { [int]$_ }
    $level = $major * 100 + $minor
    if ($level -ge 1300) { return 'cu130' }
    if ($level -ge 1208) { return 'cu128' }
    if ($level -ge 1206) { return 'cu126' }
    Stop-WithError ("the NVIDIA driver supports CUDA $Version, PyTorch needs CUDA 12.6 or newer. " +
        'Update the NVIDIA driver to version 560 or newer (580+ for CUDA 13), ' +
        'or run with -Cpu to install the CPU build.')
}

# Whether a GPU is older than Turing (compute capability < 7.5): PyTorch's CUDA 12.8+ builds lack its kernels.
function Test-PreTuringGpu {
    $result = Invoke-Native -Exe 'nvidia-smi' -Arguments @('--query-gpu=compute_cap', '--format=csv,noheader')
    $old = @($result.Lines | Where-Object {
        $_ -match '^\s*(\d+)\.(\d+)' -and ([int]$Matches[1] * 100 + [int]$Matches[2]) -lt 705
    })
    return $old.Count -gt 0
}

function Test-CpuIndex {
    $ProgressPreference = 'SilentlyContinue'
    [Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor
        [Net.SecurityProtocolType]::Tls12
    try {
        Invoke-WebRequest -Uri "$TorchIndexBase/cpu/" -UseBasicParsing -TimeoutSec $ProbeTimeoutS | Out-Null
        return $true
    } catch {
        return $false
    }
}

# The torch for this machine: a label, the build (cpu, cu130, ...) and the pip arguments that install it.
function Get-TorchChoice {
    if (-not $Cpu) {
        $gpus = Get-GpuCount
        if ($gpus -gt 0) {
            $version = Get-DriverCudaVersion
            if (-not $version) {
                Stop-WithError ("nvidia-smi lists $gpus GPU(s) but prints no 'CUDA Version'. " +
                    'Check the NVIDIA driver, or run with -Cpu.')
            }
            $tag = Get-CudaWheelTag $version
            $label = "cuda $tag (driver CUDA $version, $gpus GPU(s))"
            if ($tag -ne 'cu126' -and (Test-PreTuringGpu)) {
                $tag = 'cu126'
                $label = "cuda $tag (a GPU below compute capability 7.5; driver CUDA $version, $gpus GPU(s))"
            }
            return [pscustomobject]@{
                Label = $label
                Build = $tag
                PipArgs = @('torch', '--index-url', "$TorchIndexBase/$tag")
            }
        }
    }
    if (Test-CpuIndex) {
        return [pscustomobject]@{
            Label = 'cpu (PyTorch CPU wheel index)'
            Build = 'cpu'
            PipArgs = @('torch', '--index-url', "$TorchIndexBase/cpu")
        }
    }
    return [pscustomobject]@{
        Label = 'cpu (pinned; CPU wheel index unreachable)'
        Build = 'cpu'
        PipArgs = @("torch==$TorchCpuVersion")
    }
}

function Initialize-Venv([string]$Python) {
    $pipCheck = @('-c', "$PythonCheck; import pip")
    if ((Test-Path $VenvPy) -and (Invoke-Native -Exe $VenvPy -Arguments $pipCheck).Code -eq 0) { return }
    if (Test-Path $Venv) {
        Write-Log "$Venv has no working Python 3.10-3.12 with pip; recreating it"
        Remove-Item -Recurse -Force $Venv
    }
    Write-Log "creating $Venv with $Python"
    & $Python -m venv $Venv
    if ($LASTEXITCODE -ne 0) { Stop-WithError "could not create the virtual environment with $Python." }
}

# Hash of everything an install depends on: interpreter, torch choice, requirements.txt, this script.
function Get-StampKey($Choice) {
    $requirements = Get-Content -Raw (Join-Path $Root 'requirements.txt')
    $launcher = Get-Content -Raw $PSCommandPath
    $text = @((Get-PythonVersion $VenvPy), "torch=$($Choice.Build)", $requirements, $launcher) -join "`n"
    $sha = [System.Security.Cryptography.SHA256]::Create()
    $hash = $sha.ComputeHash([System.Text.Encoding]::UTF8.GetBytes($text))
    return ([System.BitConverter]::ToString($hash)).Replace('-', '').ToLowerInvariant()
}

function Invoke-Pip([string[]]$Arguments) {
    $upgrade = @()
    if ($Update) { $upgrade = @('--upgrade') }
    & $VenvPy -m pip install @upgrade @Arguments
    if ($LASTEXITCODE -ne 0) { Stop-WithError "pip install $($Arguments -join ' ') failed (see above)." }
}

function Install-Torch($Choice) {
    $buildFile = Join-Path $Venv '.torch-build'
    if ((Test-Path $buildFile) -and "$(Get-Content -Raw $buildFile)".Trim() -ne $Choice.Build) {
        Write-Log "torch build changed to $($Choice.Build); removing the installed torch first"
        & $VenvPy -m pip uninstall -y torch
    }
    Invoke-Pip $Choice.PipArgs
    Set-Content -Path $buildFile -Value $Choice.Build -Encoding ascii
    # The requirements install (--upgrade with -Update) must keep this torch build, as install.sh does.
    $version = (Invoke-Native -Exe $VenvPy -Arguments @('-c', 'import torch; print(torch.__version__)')).Lines
    if (-not $version) { Stop-WithError 'torch was installed but does not import (see above).' }
    Set-Content -Path $TorchPin -Value "torch==$(([string]$version[-1]).Trim())" -Encoding ascii
}

function New-DesktopShortcut([string[]]$Arguments) {
    $path = Join-Path ([Environment]::GetFolderPath('Desktop')) 'Video Studio.lnk'
    $quoted = @($Arguments | ForEach-Object { if ($_ -match '\s') { '"' + $_ + '"' } else { $_ } })
    $link = (New-Object -ComObject WScript.Shell).CreateShortcut($path)
    $link.TargetPath = Join-Path $PSScriptRoot 'run.bat'
    $link.Arguments = $quoted -join ' '
    $link.WorkingDirectory = $Root
    $link.Description = 'Local text-to-video, continuation and upscaling'
    $link.Save()
    Write-Output "Shortcut written: $path"
}

function Install-All($Python, $Choice) {
    Initialize-Venv $Python
    $key = Get-StampKey $Choice
    $stampFile = Join-Path $Venv '.install-stamp-runtime'
    if (-not $Update -and (Test-Path $stampFile) -and "$(Get-Content -Raw $stampFile)".Trim() -eq $key) {
        Write-Log "up to date ($($Choice.Label))"
        return
    }
    Write-Log "torch: $($Choice.Label)"
    Install-Torch $Choice
    Invoke-Pip @('-c', $TorchPin, '-r', (Join-Path $Root 'requirements.txt'))
    Set-Content -Path $stampFile -Value $key -Encoding ascii
    Write-Log "done ($($Choice.Label)); flash-attn-4 and SageAttention are not installed on Windows"
    Write-Log 'Tip: run installer\run.bat -Shortcut to put a Video Studio shortcut on the desktop.'
}

if ($Shortcut) {
    $switches = @()  # the shortcut keeps every argument but -Shortcut
    if ($Update) { $switches += '-Update' }
    if ($DryRun) { $switches += '-DryRun' }
    if ($Cpu) { $switches += '-Cpu' }
    New-DesktopShortcut (@($switches) + @($AppArgs))
    exit 0
}
$python = Find-Python
$choice = Get-TorchChoice
if ($DryRun) {
    Write-Output "python: $python ($(Get-PythonVersion $python))"
    Write-Output "torch: $($choice.Label)"
    Write-Output "torch install: pip install $($choice.PipArgs -join ' ')"
    Write-Output 'flash-attn-4: no'
    Write-Output 'sageattention: no (not built on Windows)'
    exit 0
}
Install-All $python $choice
Set-Location $Root
& $VenvPy (Join-Path $Root 'app.py') @AppArgs
exit $LASTEXITCODE
