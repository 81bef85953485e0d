"""The web console of ``clara-rt serve``: pages rendered on the server, a little JavaScript.

* :mod:`.markup` -- the page shell (``page.html``), escaping, tables, times.
* :mod:`.pages` -- pipelines, one pipeline, jobs, metrics, errors.
* :mod:`.job_page` -- one job (timeline, logs, results, cancel) and the viewer.
* :mod:`.graph` -- a pipeline's operator graph as SVG (layered by depth).
* :mod:`.render` -- viewer PNGs: slices, MIP, windows, label overlay (NumPy + Pillow).
* :mod:`.volumes` -- finding and caching a job's image and segmentations.
* ``console.js`` -- live updates from ``/v1/events``, cancel, logs, metrics charts,
  viewer controls; ``console.css`` -- the layout, usable from 375 px wide.

The routes are in :mod:`clara_rt.server.console_routes`.
"""

from __future__ import annotations
