"""CLI commands: walls (registered on latentatlas.cli.app.app)."""
