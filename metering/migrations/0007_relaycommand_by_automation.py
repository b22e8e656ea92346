from django.db import migrations, models


def mark_automations_commands(apps, schema_editor):
    RelayCommand = apps.get_model("metering", "RelayCommand")
    RelayCommand.objects.filter(automation__isnull=False).update(by_automation=True)


class Migration(migrations.Migration):
    dependencies = [
        ("metering", "0006_automations"),
    ]

    operations = [
        migrations.AddField(
            model_name="relaycommand",
            name="by_automation",
            field=models.BooleanField(default=False, editable=False),
        ),
        migrations.RunPython(mark_automations_commands, migrations.RunPython.noop),
    ]
