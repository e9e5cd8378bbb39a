#!/bin/sh
# Runs in the app container: its files come from base (/etc/app) and from
# app's own !Copy step (this script).
echo "$(cat /etc/app/motd); APP_MODE=$APP_MODE; running in $(pwd) as uid $(id -u)"
