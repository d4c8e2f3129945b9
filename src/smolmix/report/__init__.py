"""One self-contained HTML report for any smolmix run folder, or several side by side.

``smolmix.report.command.report(runs, out)`` is the library function behind ``smolmix report``;
labs add their sections with ``smolmix.report.registry.register_sections``.
"""
