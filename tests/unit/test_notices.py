"""smimecli.notices: warnings as values, each reported once."""

from smimecli.notices import Notice, merge_notices


def test_merge_keeps_order_and_drops_repeats() -> None:
    weak = Notice("weak-cipher", "3DES is a weak cipher")
    other = Notice("cert-expiring", "the certificate expires in 3 days", "a@example.com")
    same_code_other_address = Notice("cert-expiring", "the certificate expires in 3 days", "b@x")
    merged = merge_notices([weak, other], [weak, same_code_other_address, other])
    assert merged == (weak, other, same_code_other_address)


def test_notice_json_names_its_address_only_when_it_has_one() -> None:
    assert Notice("weak-cipher", "RC2 is weak").to_json() == {
        "code": "weak-cipher",
        "text": "RC2 is weak",
    }
    assert Notice("plaintext-recipient", "x", "a@example.com").to_json()["address"] == (
        "a@example.com"
    )
    assert str(Notice("weak-cipher", "RC2 is weak")) == "RC2 is weak"
