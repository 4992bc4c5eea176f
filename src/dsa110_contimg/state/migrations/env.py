"""Alembic environment: migrate (or compare) the connection `state._alembic` passes in.

``target_metadata`` is the schema at the head, `state.schema_core.metadata`,
so ``dsa110-contimg db revision MESSAGE`` (`state._revision.revision`: Alembic's
``revision --autogenerate``) writes the next revision from an edit there; what
SQLite's reflection cannot see is not written (`state._schema_diff`).
"""

from alembic import context


def _drop_reflection_gaps(migration_context, revision, directives) -> None:
    from dsa110_contimg.state._schema_diff import drop_reflection_gaps
    from dsa110_contimg.state.schema_core import metadata

    for script in directives:
        drop_reflection_gaps(script.upgrade_ops, migration_context.bind, metadata)
        script.downgrade_ops.ops = []  # revisions are upgrade-only (script.py.mako)


def run() -> None:
    """Run the pending revisions (or autogenerate one) on the given connection."""
    from dsa110_contimg.state._schema_diff import COMPARE_OPTIONS
    from dsa110_contimg.state.schema_core import metadata

    connection = context.config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=metadata,
        process_revision_directives=_drop_reflection_gaps,
        **COMPARE_OPTIONS,
    )
    with context.begin_transaction():
        context.run_migrations()


if getattr(context, "config", None) is not None:  # run by Alembic, not imported
    run()
