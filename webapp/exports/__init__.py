from webapp.exports.views import bp

__all__ = ["bp"]
