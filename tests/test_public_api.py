"""The public surface is small and deliberate: a change to it must change this test."""

import likewise


def test_exported_members() -> None:
    assert sorted(likewise.__all__) == sorted(
        [
            "Client",
            "Database",
            "EngineParams",
            "Index",
            "IndexConfig",
            "IndexInfo",
            "Match",
            "MetadataIndex",
            "QueryResult",
            "SearchHit",
            "SearchResult",
            "SemanticCache",
            "Vector",
            "VectorList",
            "errors",
            "ingest",
            "open",
            "__version__",
        ]
    )
    for name in likewise.__all__:
        assert hasattr(likewise, name)


def test_every_error_is_a_likewise_error() -> None:
    from likewise import errors

    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.LikewiseError)
        assert isinstance(cls.http_status, int) and cls.code
        assert name in (errors.__doc__ or ""), f"{name} missing from the tree in errors.py's docstring"
