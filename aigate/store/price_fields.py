"""The fields of a price snapshot, as each usage-log row stores it (seed 001's price fields)."""

PRICE_FIELDS = (
    "cache_creation_price",
    "cache_creation_price_unit",
    "cached_price",
    "cached_price_unit",
    "image_input_price",
    "image_input_price_unit",
    "input_price",
    "input_price_unit",
    "output_price",
    "output_price_unit",
    "per_request_price",
    "thinking_mode_output_price",
    "thinking_mode_output_price_unit",
    "web_search_price",
    "web_search_price_unit",
)
