"""WSGI entry point for production servers: ``gunicorn 'webapp.wsgi:create_wsgi_app()'``."""

from __future__ import annotations

from flask import Flask

from webapp import create_app


def create_wsgi_app() -> Flask:
    return create_app()
