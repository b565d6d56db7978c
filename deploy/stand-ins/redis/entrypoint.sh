#!/bin/sh
# As the official image's docker-entrypoint.sh: arguments that start with "-" are
# redis-server's, and redis-server without a configuration file runs with protected mode off
# (the image serves other containers, not only its own loopback).
case "${1:-}" in -*) set -- redis-server "$@" ;; esac
if [ "${1:-}" = redis-server ] && [ ! -f "${2:-}" ]; then
    set -- "$@" --protected-mode no
fi
exec "$@"
