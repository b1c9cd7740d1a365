"""`orders-manage`: the installed release's manage.py.

Defaults to production settings and to the DIRECT PostgreSQL connection
(DATABASE_DIRECT_URL): management commands such as migrate need a real session, which
PgBouncer's transaction pooling does not give. Set DJANGO_DATABASE_DIRECT=0 to run a
command through PgBouncer instead."""

import os
import sys


def main(argv=None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")
    os.environ.setdefault("DJANGO_DATABASE_DIRECT", "1")
    from django.core.management import execute_from_command_line

    execute_from_command_line(argv if argv is not None else sys.argv)


if __name__ == "__main__":
    main()
