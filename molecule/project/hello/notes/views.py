from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse

from .models import Note


def note_list(request):
    """The notes, and how often this list was asked for (a counter in Redis)."""
    cache.add("notes:views", 0, timeout=None)
    views = cache.incr("notes:views")
    notes = [
        {"id": n.id, "text": n.text, "created": n.created.isoformat()} for n in Note.objects.all()
    ]
    return JsonResponse({"notes": notes, "views": views, "greeting": settings.GREETING})


def status(request):
    """For the deploy's checks: the database and Redis answer, and which release this is. Asked
    before migrate too, so it uses no table of the project."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    cache.set("status:probe", 1, timeout=60)
    return JsonResponse({"database": "ok", "redis": "ok", "version": settings.RELEASE})
