"""Alembic environment: migrate the connection `state._alembic` passes in."""

from alembic import context


def run() -> None:
    """Run the pending revisions on the configured connection."""
    connection = context.config.attributes["connection"]
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()


if getattr(context, "config", None) is not None:  # run by Alembic, not imported
    run()
