"""CLI commands: graphene (registered on latentatlas.cli.app.app)."""
