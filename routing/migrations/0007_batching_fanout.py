from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('routing', '0006_route_access'),
    ]

    operations = [
        migrations.AddField(
            model_name='route',
            name='upstream_batching',
            field=models.BooleanField(default=False, help_text='JSON-RPC calls bound for the same target within a short window (by default 0.1 s, at most 10 calls) are sent as one JSON-RPC batch, and each caller gets its own answer. Only for upstreams that accept batches and answer them with a JSON array.', verbose_name='batch calls toward the upstream'),
        ),
        migrations.AddField(
            model_name='route',
            name='fanout',
            field=models.CharField(blank=True, choices=[('', "None: the route's own service answers"), ('first', 'First: every service is asked, the first successful answer wins (hedging)'), ('last', 'Last: every service is asked, the last successful answer wins'), ('merge', "Merge: list methods answer the union of every service's list (MCP)")], default='', help_text="Ask the route's service and the fan-out services at once. First and last send every request to every service: use them for calls that are harmless to repeat. Merge asks every service only for lists (and resources/read), and sends a tool or prompt call to the one service its prefixed name names.", max_length=8, verbose_name='fan-out'),
        ),
        migrations.AddField(
            model_name='route',
            name='fanout_services',
            field=models.JSONField(blank=True, default=list, help_text='Services asked together with the route\'s own, in this order, e.g. ["search-eu", "search-us"]. Merged tool and prompt names become <service>__<name>.', verbose_name='fan-out services'),
        ),
    ]
