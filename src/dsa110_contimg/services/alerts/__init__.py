"""Alerts without Prometheus: the rules of ``monitoring/alerts.yml`` in process.

`load_rules` reads the Prometheus rule file and pairs each rule with its
evaluator; `collect_figures` computes the figures from the state database
(and `metric_samples` the ``/metrics`` samples from them); `AlertEngine`
honours ``for:``, de-duplicates, sends resolved messages and respects the
silences stored in the state database; `run_alerts_task` runs it inside the
stream. Messages go to the log and to the ``alerts.webhooks``.
"""

from dsa110_contimg.services.alerts._engine import (
    AlertEngine,
    Evaluation,
    render_template,
)
from dsa110_contimg.services.alerts._figures import (
    DiskFigure,
    Figures,
    collect_figures,
    collect_host_samples,
    is_observing,
    metric_samples,
)
from dsa110_contimg.services.alerts._notify import Notification, WebhookSender, deliver
from dsa110_contimg.services.alerts._rules import (
    AlertRule,
    load_rules,
    parse_comparisons,
    parse_duration_s,
    promql_metric_names,
    rules_file,
)
from dsa110_contimg.services.alerts._run import (
    build_engine,
    evaluate_alerts,
    run_alerts_task,
)

__all__ = [
    "AlertEngine",
    "AlertRule",
    "DiskFigure",
    "Evaluation",
    "Figures",
    "Notification",
    "WebhookSender",
    "build_engine",
    "collect_figures",
    "collect_host_samples",
    "deliver",
    "evaluate_alerts",
    "is_observing",
    "load_rules",
    "metric_samples",
    "parse_comparisons",
    "parse_duration_s",
    "promql_metric_names",
    "render_template",
    "rules_file",
    "run_alerts_task",
]
