@echo off
rem Installs what is missing and starts Video Studio; arguments go to run.ps1 (e.g. -Shortcut, --share).
powershell -NoProfile -ExecutionPolicy Bypass -File "%~dp0run.ps1" %*
exit /b %ERRORLEVEL%
