"""OpenAPI in and out: parse + validate documents, plan imports, build exports, generate client SDKs.

Pure logic over plain dicts and rows; the database writes live in ``control_plane.services.openapi``.
"""
