"""Short forms of the one search path for tests: the query value, then ``search.search``."""

import io

from gallery import search


def by_text(text, *, ranking="", relevant=False):
    return search.search(search.text_query(text, ranking_name=ranking), search.ResultOptions(relevant=relevant))


def by_image(file):
    file = io.BytesIO(file) if isinstance(file, bytes) else file
    return search.search(search.SearchQuery.build(image_file=file))


def similar(image):
    return search.search(search.SearchQuery.similar(image))
