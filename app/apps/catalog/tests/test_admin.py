import errno
import io
import os

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from apps.catalog.models import Product
from conftest import make_category

pytestmark = pytest.mark.django_db


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buf, "PNG")
    return buf.getvalue()


def photo() -> SimpleUploadedFile:
    return SimpleUploadedFile("photo.png", png(), content_type="image/png")


def product_form(category, sku: str, image: SimpleUploadedFile, **fields) -> dict:
    """The admin's add-product form, filled in."""
    return {
        "category": category.pk,
        "sku": sku,
        "name": sku.title(),
        "price": "3.00",
        "stock": "7",
        "image": image,
        **fields,
    }


def test_admin_uploads_a_product_image(admin_client, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    category = make_category()
    response = admin_client.post(
        "/admin/catalog/product/add/",
        product_form(category, "IMG-1", photo(), description="", is_active="on"),
    )
    assert response.status_code == 302, response.content[:2000]
    product = Product.objects.get(sku="IMG-1")
    assert product.image.name.startswith("products/")
    assert (tmp_path / product.image.name).read_bytes() == png()


def test_admin_refuses_a_non_image(admin_client, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    category = make_category()
    response = admin_client.post(
        "/admin/catalog/product/add/",
        product_form(category, "IMG-2", SimpleUploadedFile("x.png", b"not an image")),
    )
    assert response.status_code == 200  # the form again, with an error
    assert not Product.objects.filter(sku="IMG-2").exists()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_full_or_read_only_media_fails_the_upload_clearly(
    admin_client, settings, tmp_path, monkeypatch, code
):
    """The storage cannot write (disk full, read-only): a clear message, no product, no 500."""
    settings.MEDIA_ROOT = str(tmp_path)

    def refuse(self, name, content):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr("django.core.files.storage.FileSystemStorage._save", refuse)
    category = make_category()
    response = admin_client.post(
        "/admin/catalog/product/add/", product_form(category, "IMG-3", photo()), follow=True
    )
    assert response.status_code == 200
    assert os.strerror(code) in response.content.decode()
    assert "nothing was saved" in response.content.decode()
    assert not Product.objects.filter(sku="IMG-3").exists()
    # the rest of the admin still works
    assert admin_client.get("/admin/catalog/product/").status_code == 200
