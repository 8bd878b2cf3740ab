from webapp.me.views import bp

__all__ = ["bp"]
