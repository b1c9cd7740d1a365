#!/usr/bin/env python
"""Development entry point; an installed release uses the `orders-manage` console script."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
