"""Outgoing integrations of a location: Smappee-compatible MQTT, Home Assistant discovery, a broker.

The UUID is added in three steps (nullable, one value per existing row, then unique) because a
single callable default would give every existing row the same value.
"""

import uuid

from django.db import migrations, models


def give_each_location_a_uuid(apps, schema_editor):
    Location = apps.get_model("devices", "Location")
    for location in Location.objects.filter(uuid__isnull=True).only("pk"):
        Location.objects.filter(pk=location.pk).update(uuid=uuid.uuid4())


class Migration(migrations.Migration):
    dependencies = [
        ("devices", "0003_support_permission"),
    ]

    operations = [
        migrations.AddField(
            model_name="location",
            name="uuid",
            field=models.UUIDField(editable=False, null=True, verbose_name="MQTT id"),
        ),
        migrations.RunPython(give_each_location_a_uuid, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="location",
            name="uuid",
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True, verbose_name="MQTT id"),
        ),
        migrations.AddField(
            model_name="location",
            name="smappee_mqtt",
            field=models.BooleanField(
                default=False,
                help_text="Publish live values as a Smappee gateway's local broker does.",
                verbose_name="Smappee-compatible MQTT",
            ),
        ),
        migrations.AddField(
            model_name="location",
            name="home_assistant",
            field=models.BooleanField(
                default=False,
                help_text="Announce sensors and relay switches to Home Assistant.",
                verbose_name="Home Assistant discovery",
            ),
        ),
        migrations.AddField(
            model_name="location",
            name="mqtt_broker_url",
            field=models.CharField(
                blank=True,
                help_text="mqtt://host:1883 or mqtts://host:8883 of the homeowner's broker; empty: the server's broker.",
                max_length=200,
                verbose_name="MQTT broker URL",
            ),
        ),
        migrations.AddField(
            model_name="location",
            name="mqtt_broker_username",
            field=models.CharField(blank=True, max_length=128, verbose_name="MQTT broker username"),
        ),
        migrations.AddField(
            model_name="location",
            name="mqtt_broker_password",
            field=models.CharField(blank=True, max_length=128, verbose_name="MQTT broker password"),
        ),
    ]
