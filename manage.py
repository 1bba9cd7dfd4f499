#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""
import os
import sys


# Commands that need only the models and the sending services start with just those apps
# (PROFILEOPS_APPS in profileops/settings.py): every cron or loop start of send_updates pays
# for Django, requests and ProfileOps, not for the admin or the scheduler.
SENDING_ONLY_COMMANDS = {'send_updates'}


def main():
    """Run administrative tasks."""
    os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'profileops.settings')
    if sys.argv[1:2] and sys.argv[1] in SENDING_ONLY_COMMANDS:
        os.environ.setdefault('PROFILEOPS_APPS', 'sending')
    try:
        from django.core.management import execute_from_command_line
    except ImportError as exc:
        raise ImportError(
            "Couldn't import Django. Are you sure it's installed and "
            "available on your PYTHONPATH environment variable? Did you "
            "forget to activate a virtual environment?"
        ) from exc
    execute_from_command_line(sys.argv)


if __name__ == '__main__':
    main()
