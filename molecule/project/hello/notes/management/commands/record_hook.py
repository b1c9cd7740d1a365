"""`record_hook NAME`: note in Redis that the deploy ran this hook, for which release, and which
migrations were still unapplied then (the scenario `project` checks before/after migrate)."""

import json
import os
import time

import redis
from django.core.management.base import BaseCommand
from django.db import connection
from django.db.migrations.executor import MigrationExecutor


class Command(BaseCommand):
    help = "Record in Redis that a deploy hook ran (hello:hook:<name>)."

    def add_arguments(self, parser):
        parser.add_argument("name")

    def handle(self, *args, name, **options):
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        record = {
            "release": os.environ["DJANGO_RELEASE"],
            "unapplied": [f"{m.app_label}.{m.name}" for m, _ in plan],
            "time": time.time(),
        }
        redis.Redis.from_url(os.environ["REDIS_URL"]).set(f"hello:hook:{name}", json.dumps(record))
        self.stdout.write(json.dumps(record))
