"""The build report, in modules that import only downward: ``model`` (with ``decode``) and
``formatting`` at the bottom; then ``tables`` and ``comparison``; then the renderings
``markdown``, ``svg`` and ``html``; ``write`` on top puts a build folder's report files.
``load`` reads a report.json back into the model. The console tables live in ``cli/render.py``:
nothing here knows about a terminal."""
