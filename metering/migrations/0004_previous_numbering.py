from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('metering', '0003_missing_modules'),
    ]

    operations = [
        migrations.AddField(
            model_name='powerboxstate',
            name='previous_numbering',
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
