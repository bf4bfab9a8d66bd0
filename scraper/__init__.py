"""The gencomp image crawler (a Scrapy project) and its offline demo website.

Run it with ``python -m scraper.crawl`` (see :mod:`scraper.crawl`); it writes content-addressed images and
``manifest.parquet`` (see :mod:`scraper.manifest`). The :mod:`gencomp` library never imports this package; only
the ``gencomp scrape`` command does, when it runs, to build the crawl's command line
(:func:`scraper.crawl.command_from_params`, the builder the pipeline's flow uses too).
"""
