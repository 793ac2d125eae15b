"""CLI commands: unmix (registered on latentatlas.cli.app.app)."""
