from webapp.tree.views import bp

__all__ = ["bp"]
