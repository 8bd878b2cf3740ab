from webapp.notify.views import bp

__all__ = ["bp"]
