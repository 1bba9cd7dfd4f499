"""Create the Operators and Supervisors groups with exactly their permissions.

Re-running it (or running it after someone edited the groups) resets them to this definition;
custom roles belong in groups of other names.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

ROLES = {
    "Operators": [
        "add_profileupdate", "change_profileupdate", "view_profileupdate",
        "submit_profileupdate", "cancel_profileupdate", "requeue_profileupdate",
        "import_profileupdate", "export_profileupdate",
        "add_attributemapping", "change_attributemapping", "view_attributemapping",
        "view_importjob",
    ],
    "Supervisors": [
        "view_profileupdate", "approve_profileupdate", "export_profileupdate",
        "requeue_profileupdate", "view_attributemapping", "view_sendattempt",
    ],
}


def create_roles(apps, schema_editor):
    # Permissions are normally created after all migrations; make sure they exist now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        perms = list(Permission.objects.filter(content_type__app_label="updates", codename__in=codenames))
        missing = set(codenames) - {p.codename for p in perms}
        if missing:
            raise RuntimeError(f"permissions missing for {name}: {sorted(missing)}")
        group.permissions.set(perms)


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("updates", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(create_roles, remove_roles)]
