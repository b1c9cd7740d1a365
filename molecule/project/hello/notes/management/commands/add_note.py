"""`add_note TEXT`: add a note unless one with that text exists (a post-migrate hook)."""

from django.core.management.base import BaseCommand

from notes.models import Note


class Command(BaseCommand):
    help = "Add a note with this text, once."

    def add_arguments(self, parser):
        parser.add_argument("text")

    def handle(self, *args, text, **options):
        note, created = Note.objects.get_or_create(text=text)
        self.stdout.write(f"note {note.id}: {'added' if created else 'exists'}")
