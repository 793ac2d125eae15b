"""CLI commands: analyze (registered on latentatlas.cli.app.app)."""
