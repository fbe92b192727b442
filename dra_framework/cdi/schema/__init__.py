"""Verbatim copies of the upstream CDI JSON schema (package data).

``schema.json`` and ``defs.json`` are byte-for-byte copies of
``schema/schema.json`` and ``schema/defs.json`` from
github.com/cncf-tags/container-device-interface at ``main`` @ ``05ae4b5bb730``
(CDI spec 1.1.0, Apache-2.0, "Copyright © The CDI Authors"); provenance, git
blobs and sha256 sums are in ``SOURCE.md`` next to them. Do not edit them; re-copy from
upstream.
"""
