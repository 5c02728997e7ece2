"""ContextCLIP reproduction kit: CLIP + a contextual loss between image and text embeddings.

The library owns the logic; the numbered notebooks in ``notebooks/`` call it. See
``docs/architecture.md`` for the modules and their interfaces.
"""

__version__ = "0.1.0"
