from .models import ApiToken


def token_by_hash(key_hash: str) -> ApiToken | None:
    return ApiToken.objects.select_related("user").filter(key_hash=key_hash).first()


def token_hashes_for_user(user_id: int) -> list[str]:
    return list(ApiToken.objects.filter(user_id=user_id).values_list("key_hash", flat=True))
