"""Lab exports: the report for bad rows, site layouts (CSV with decimal commas, XLSX),
re-imports that create nothing, on a real SqlStore (SQLite; PostgreSQL once)."""

from __future__ import annotations

import io
from datetime import datetime

import pytest

from gateway.adapters.labexport import import_export
from gateway.adapters.loader import Network
from gateway.fhir import validate
from gateway.store.sql import SqlStore
from tests.adapters.conftest import KEY, csv_of

GOOD = ("PZ001,FT01,LOT-24-017,CAR-T product,APH-24-009,2026-11-20T09:30:00,VIT,,Viability,"
        "92.5,%,>=70,N,final,2026-11-20T15:00:00,W123425123456")
ROWS = (
    GOOD,                                                               # row 2: good
    "PZ001,FT01,LOT-24-017,,,2026-11-20T09:30:00,ENDO,,,<0.5,UE/ml,<5,,final,,",  # 3: good
    "PZ002,FT01,,,,20/11/2026,VIT,,,90,%,,,,,",                         # 4: bad date
    "PZ003,,,,,2026-11-20,DOSE,,,3,mg,,,,,",                            # 5: unit not convertible
    "PZ003,,,,,2026-11-20,XYZ,,,1,%,,,,,",                              # 6: unmapped: kept
    ",FT01,,,,2026-11-20,VIT,,,90,%,,,,,",                              # 7: missing subject
    GOOD,                                                               # 8: duplicate of 2
)


def test_bad_rows_are_reported_and_never_stop_the_good_ones(
        store: SqlStore, network: Network) -> None:
    report = import_export(store, network, "cf-lanzani", csv_of(*ROWS), "qc.csv", KEY)
    assert report.layout == "network-csv" and report.rows == 7 and report.accepted == 3
    assert [(i.row, i.column) for i in report.rejected] == [
        (4, "collected_at"), (5, "unit"), (7, "site_subject_id"), (8, "duplicate")]
    assert [(i.row, i.column, i.severity) for i in report.warnings] == [
        (6, "test_code", "warning")]
    assert "not convertible" in report.rejected[1].reason
    outcome = report.to_outcome()
    validate(outcome)
    assert outcome["issue"][0]["location"] == ["row[4].collected_at"]
    observations = store.history("Observation", None, count=50)
    assert len(observations) == 3
    for resource_type in ("Observation", "Specimen", "Patient", "Provenance", "ResearchSubject"):
        for resource in store.history(resource_type, None, count=50):
            validate(resource)


def test_a_row_becomes_observation_specimen_chain_patient_study_and_provenance(
        store: SqlStore, network: Network) -> None:
    import_export(store, network, "cf-lanzani", csv_of(GOOD), "qc.csv", KEY)
    obs = store.history("Observation", None)[0]
    assert obs["code"]["coding"][0] == {
        "system": "https://plagencell.example.org/fhir/CodeSystem/cgt-lab",
        "code": "product-viability",
        "display": "Viable cells/total cells in cell therapy product"}
    assert obs["code"]["coding"][1]["code"] == "VIT"
    assert obs["valueQuantity"]["code"] == "%" and obs["valueQuantity"]["value"] == 92.5
    assert obs["effectiveDateTime"] == "2026-11-20T09:30:00+01:00"
    specimen = store.read(*obs["specimen"]["reference"].split("/"))
    assert {"system": "https://www.isbt128.org/uri/DonationIdentificationNumber",
            "value": "W123425123456"} in specimen["identifier"]
    assert "LOT-24-017" not in str(specimen) and "PZ001" not in str(store.history("Patient", None))
    parent = store.read(*specimen["parent"][0]["reference"].split("/"))
    assert parent["resourceType"] == "Specimen"
    study = obs["extension"][0]["valueReference"]["reference"]
    assert store.read(*study.split("/"))["title"].startswith("CARCIK-CD19")
    provenance = store.history("Provenance", None)[0]
    assert provenance["entity"][0]["what"]["display"] == "qc.csv, row 2"


def test_reimporting_the_same_file_creates_nothing_new(store: SqlStore, network: Network) -> None:
    data = csv_of(*ROWS)
    first = import_export(store, network, "cf-lanzani", data, "qc.csv", KEY)
    pending = store.outbox_pending()
    again = import_export(store, network, "cf-lanzani", data, "qc.csv", KEY)
    assert first.created > 0 and again.already_imported and again.created == 0
    assert store.outbox_pending() == pending
    assert len(store.inbox_list(site="cf-lanzani")) == 1


def test_the_same_rows_in_another_file_update_nothing(store: SqlStore, network: Network) -> None:
    import_export(store, network, "cf-lanzani", csv_of(GOOD), "a.csv", KEY)
    pending = store.outbox_pending()
    second = import_export(store, network, "cf-lanzani", csv_of(GOOD) + b"\n", "b.csv", KEY)
    assert second.created == 1  # only the Provenance naming b.csv
    assert store.outbox_pending() == pending + 1


@pytest.mark.postgres
def test_reimport_creates_nothing_new_on_postgresql(pg_url: str, network: Network) -> None:
    store = SqlStore(pg_url)
    store.migrate()
    try:
        data = csv_of(*ROWS)
        import_export(store, network, "cf-lanzani", data, "qc.csv", KEY)
        pending = store.outbox_pending()
        assert import_export(store, network, "cf-lanzani", data, "qc.csv", KEY).created == 0
        assert store.outbox_pending() == pending
    finally:
        store.close()


def test_a_site_csv_layout_with_decimal_commas_and_italian_dates(
        store: SqlStore, network: Network) -> None:
    data = ("PAZIENTE;PROTOCOLLO;ID_CAMPIONE;MATRICE;ID_PADRE;DATA_PRELIEVO;COD_TEST;TEST;VALORE;"
            "UM;RANGE;ESITO;DATA_REFERTO;DIN\n"
            "MB-1;CARCIK-MB;CIK-1;prodotto;;17/11/2026 09:00;QC-VIAB;Vitalità;94,2;%;;N;"
            "17/11/2026 14:30;\n"
            "MB-1;CARCIK-MB;CIK-1;prodotto;;31/02/2026 09:00;QC-CD3;CD3;97;%;;;;\n").encode()
    report = import_export(store, network, "cf-verri", data, "qc.csv", KEY)
    assert report.layout == "qc-csv" and report.accepted == 1
    assert [(i.row, i.column) for i in report.rejected] == [(3, "collected_at")]
    obs = store.history("Observation", None)[0]
    assert obs["valueQuantity"]["value"] == 94.2
    assert obs["effectiveDateTime"] == "2026-11-17T09:00:00+01:00"


def test_units_are_converted_to_the_unit_of_the_code_map(
        store: SqlStore, network: Network) -> None:
    report = import_export(store, network, "hpg23", csv_of(
        "7001234,,,,,2026-11-20T08:00:00,PCR,,CRP,4.8,mg/dl,,H,final,,"), "crp.csv", KEY)
    assert report.ok, report.to_json()
    quantity = store.history("Observation", None)[0]["valueQuantity"]
    assert quantity == {"value": 48, "unit": "mg/L", "system": "http://unitsofmeasure.org",
                        "code": "mg/L"}


def xlsx_of(rows: list[list[object]], sheet: str = "Rilascio") -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    ws = book.active
    ws.title = sheet
    for row in rows:
        ws.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


LANZANI_HEADER = ["Codice paziente", "Studio", "Lotto", "Tipo campione", "Lotto di partenza",
                  "Data prelievo", "Codice analisi", "Analisi", "Risultato", "Unità", "Specifica",
                  "Data analisi", "DIN"]


def test_an_xlsx_export_in_the_site_layout(store: SqlStore, network: Network) -> None:
    data = xlsx_of([LANZANI_HEADER,
                    ["BG-7", "FT01", "LOT-9", "CARCIK", "LEU-9", datetime(2026, 11, 3, 9, 0),
                     "CAR", "CAR+", 41.5, "%", ">=15", "04/11/2026 10:00", "W123426000777"],
                    ["BG-7", "FT01", "LOT-9", "CARCIK", "", "non una data",
                     "VIT", "Vitalità", 95, "%", "", "", ""]])
    report = import_export(store, network, "cf-lanzani", data, "rilascio.xlsx", KEY)
    assert report.layout == "lims-xlsx" and report.accepted == 1
    assert [(i.row, i.column) for i in report.rejected] == [(3, "collected_at")]
    obs = store.history("Observation", None)[0]
    assert obs["status"] == "final" and obs["valueQuantity"]["value"] == 41.5
    assert obs["issued"] == "2026-11-04T10:00:00+01:00"


def test_an_unreadable_file_is_reported_and_kept_in_the_inbox(
        store: SqlStore, network: Network) -> None:
    report = import_export(store, network, "hpg23", b"just,some\ncolumns,here\n", "x.csv", KEY)
    assert report.error and "neither the network CSV format" in report.error
    assert store.inbox_list(status="rejected")[0].transport == "file"


def test_a_file_refused_before_its_layout_was_configured_imports_when_sent_again(
        store: SqlStore, network: Network) -> None:
    data = ("PAZIENTE;PROTOCOLLO;ID_CAMPIONE;MATRICE;ID_PADRE;DATA_PRELIEVO;COD_TEST;TEST;VALORE;"
            "UM;RANGE;ESITO;DATA_REFERTO;DIN\n"
            "MB-1;CARCIK-MB;CIK-1;prodotto;;17/11/2026 09:00;QC-VIAB;Vitalità;94,2;%;;N;"
            "17/11/2026 14:30;\n").encode()
    before = Network(sites={**network.sites, "cf-verri": network.sites["cf-verri"].model_copy(
        update={"lab_exports": []})}, studies=network.studies)
    refused = import_export(store, before, "cf-verri", data, "qc.csv", KEY)
    assert refused.error
    accepted = import_export(store, network, "cf-verri", data, "qc.csv", KEY)  # after the fix
    assert accepted.ok and accepted.accepted == 1 and accepted.inbox_id == refused.inbox_id
    [record] = store.inbox_list(site="cf-verri")
    assert record.status == "processed" and record.resource_refs


def test_test_names_and_text_values_are_stored_without_identity(
        store: SqlStore, network: Network) -> None:
    # test_name names the subject and a phone; the text value carries a codice fiscale
    row = ("PZ001,FT01,,,,2026-11-20,STER,,Sterility PZ001 (call 335 1234567),"
           "negative - CF RSSNCL61C12F205X,,,,final,,")
    report = import_export(store, network, "cf-lanzani", csv_of(row), "steril.csv", KEY)
    assert report.accepted == 1, report.rejected
    [obs] = store.history("Observation", None, count=5)
    assert obs["code"]["text"] == "Sterility [ID] (call [PHONE])"
    assert obs["valueString"] == "negative - CF [ID]"
    assert report.scrubbed == {"ID": 2, "PHONE": 1}
    assert "335" not in str(report.to_outcome()) and "PZ001" not in str(report.to_json())


def test_a_row_s_report_names_every_real_error_not_only_the_first(
        store: SqlStore, network: Network) -> None:
    # an unmapped code (kept), a date in no format, an unconvertible unit, no subject
    row = ",FT01,,,,20-11-2026 9h,XYZ,,,3,furlongs,,,,,"
    report = import_export(store, network, "cf-lanzani", csv_of(row), "bad.csv", KEY)
    assert report.accepted == 0
    assert [(i.row, i.column) for i in report.rejected] == [
        (2, "site_subject_id"), (2, "collected_at")]
    assert "test_code" not in {i.column for i in report.rejected}


def test_a_repeated_result_with_another_value_is_a_conflict_not_a_duplicate(
        store: SqlStore, network: Network) -> None:
    other = GOOD.replace(",92.5,", ",88.0,")
    report = import_export(store, network, "cf-lanzani", csv_of(GOOD, GOOD, other), "r.csv",
                           KEY)
    assert [(i.row, i.column) for i in report.rejected] == [(3, "duplicate"), (4, "conflict")]
    assert "with another value" in report.rejected[1].reason
    assert report.to_outcome()["issue"][1]["code"] == "conflict"


def test_an_unmapped_code_is_kept_in_the_site_system_unless_the_site_is_strict(
        store: SqlStore, network: Network) -> None:
    row = "PZ009,,,,,2026-11-20,XYZ,,Local test,1,%,,,,,"
    report = import_export(store, network, "cf-lanzani", csv_of(row), "u.csv", KEY)
    assert report.accepted == 1
    [obs] = store.history("Observation", None, count=5)
    assert obs["code"]["coding"] == [{"system": "urn:plagencell:site:cf-lanzani:codes",
                                      "code": "XYZ"}]
    strict = network.sites["cf-lanzani"].model_copy(update={"unmapped_codes": "strict"})
    network.sites["cf-lanzani"] = strict
    report = import_export(store, network, "cf-lanzani", csv_of(row.replace("PZ009", "PZ010")),
                           "s.csv", KEY)
    assert report.accepted == 0 and [i.column for i in report.rejected] == ["test_code"]
    assert "strict" in report.rejected[0].reason
