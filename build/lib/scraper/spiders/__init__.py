"""Spiders of the gencomp crawler: ``images`` (scraper.spiders.images.ImagesSpider)."""
