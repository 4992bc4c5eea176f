"""Cross-cutting helpers: configuration loading and structured logging."""

__all__: list[str] = []
