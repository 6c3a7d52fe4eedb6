"""addok configuration of the benchmark: the api-adresse (addok-france + addok-fr) pipeline,
on Redis databases 9/10 of 127.0.0.1:6379 so that no other addok data is touched."""

REDIS = {
    "host": "127.0.0.1",
    "port": 6379,
    "indexes": {"db": 9},
    "documents": {"db": 10},
}
QUERY_PROCESSORS_PYPATHS = [
    "addok.helpers.text.check_query_length",
    "addok_france.extract_address",
    "addok_france.clean_query",
    "addok_france.remove_leading_zeros",
]
SEARCH_RESULT_PROCESSORS_PYPATHS = [
    "addok.helpers.results.match_housenumber",
    "addok_france.make_labels",
    "addok.helpers.results.score_by_importance",
    "addok.helpers.results.score_by_autocomplete_distance",
    "addok.helpers.results.score_by_ngram_distance",
    "addok.helpers.results.score_by_geo_distance",
]
PROCESSORS_PYPATHS = [
    "addok.helpers.text.tokenize",
    "addok.helpers.text.normalize",
    "addok_france.glue_ordinal",
    "addok_france.fold_ordinal",
    "addok_france.flag_housenumber",
    "addok.helpers.text.synonymize",
    "addok_fr.phonemicize",
]
FIELDS = [
    {"key": "name", "boost": 4, "null": False},
    {"key": "street"},
    {"key": "postcode", "boost": lambda doc: 1.2 if doc.get("type") == "municipality" else 1},
    {"key": "city"},
    {"key": "housenumbers"},
    {"key": "context"},
]
FILTERS = ["type", "postcode", "citycode", "city"]
BATCH_WORKERS = 1
