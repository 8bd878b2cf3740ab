from webapp.quarterly.views import bp

__all__ = ["bp"]
