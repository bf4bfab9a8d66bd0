"""The gencomp image crawler (a Scrapy project) and its offline demo website.

Run it with ``python -m scraper.crawl`` (see :mod:`scraper.crawl`); it writes content-addressed images and
``manifest.parquet`` (see :mod:`scraper.manifest`). Nothing in :mod:`gencomp` imports this package.
"""
