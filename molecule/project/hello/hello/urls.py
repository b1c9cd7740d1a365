"""URLs of the hello project (the Molecule scenario `project` of the blueprint)."""

from django.contrib import admin
from django.urls import path

from notes import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("notes/", views.note_list, name="note-list"),
    path("status/", views.status, name="status"),
]
