from webapp.nrr.views import bp

__all__ = ["bp"]
