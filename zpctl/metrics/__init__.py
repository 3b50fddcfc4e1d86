"""Monitoring: the exporter's collectors and the rendered Prometheus and Grafana files.

What no daemon exports itself, ``zpctl exporter`` serves, read live from the platform:

* :mod:`zpctl.metrics.health` — per-node, per-zone and per-data-center health (SIP OPTIONS,
  rtpengine ng ping, the lbs' dispatcher state);
* :mod:`zpctl.metrics.registrations` — registrations per account (usrloc ``ul.dump``);
* :mod:`zpctl.metrics.calls` — call attempts and failures per proxy (dialog statistics), the
  inputs of the answer-seizure ratio;
* :mod:`zpctl.metrics.quality` — call quality from rtpengine (ng ``list``/``query``): MOS,
  jitter, packet loss and round-trip time per call and per media node;
* :mod:`zpctl.metrics.switch` — FreeSWITCH sessions, calls, pause state and queues per
  switch, through a small source interface the ESL client plugs into;
* :mod:`zpctl.metrics.certs` — certificate expiry of the PKI files the exporter is told about.

Every collector is a client_python custom collector that takes its data source and a
registry as constructor arguments, so tests point it at recorded replies and a fresh
registry.  :mod:`zpctl.metrics.exporter` wires them to live clients.  ``prometheus.yml``,
alert rules and dashboards are rendered by the render layer
(:mod:`zpctl.render.monitoring`), with every other file of a build.
"""
