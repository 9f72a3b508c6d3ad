from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("routing", "0007_batching_fanout"),
    ]

    operations = [
        migrations.AlterField(
            model_name="service",
            name="kind",
            field=models.CharField(
                choices=[
                    ("mcp", "MCP server (Streamable HTTP)"),
                    ("http", "Plain HTTP API"),
                    ("virtual", "Virtual MCP server (federation)"),
                ],
                default="mcp",
                max_length=8,
            ),
        ),
    ]
