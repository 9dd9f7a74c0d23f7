"""The three asset layers: `stripe/<resource>` (raw), `xdm/<resource>` and `aep/<resource>`."""

#: Who answers for the assets in the Dagster UI (a `team:` name or an e-mail address; Dagster shows
#: it on every asset page and lets the catalog be filtered by it). Change it to your team.
ASSET_OWNERS = ["team:stripe-aep"]
