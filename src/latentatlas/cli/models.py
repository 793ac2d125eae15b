"""CLI commands: models (registered on latentatlas.cli.app.app)."""
