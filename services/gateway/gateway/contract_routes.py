"""The gateway's routes for contracts and their attachments (the sales service).

A mixin of GatewayService: the routes here use its dependencies
(``self.sales``, ``self.context``, ``self._users()``, ``self._once``).
The sales service validates input, applies the lifecycle and record-level
rules; the gateway adds what only it knows (the owner's team) and turns
files into multipart uploads and downloads. A file travels to sales
base64-encoded inside the RPC message, as customer imports do.
"""
import base64
import hashlib
from urllib.parse import quote

from werkzeug.wrappers import Response

from crm_common.errors import ValidationFailed

from gateway import idempotency
from gateway.contract_schemas import (
    CONTRACT_FILTERS, MAX_ATTACHMENT_BYTES, AttachmentList, AttachmentResponse, AttachmentUploadForm,
    ContractCreateRequest, ContractHistoryPage, ContractListQuery, ContractPage, ContractReasonRequest,
    ContractResponse, ContractSignRequest, ContractUpdateRequest, ExpiryCheckResponse,
)
from gateway.permissions import rule
from gateway.http import API_PREFIX, Reply, api, etag, if_match_version, if_none_match_version, page_arguments
from gateway.import_routes import FILE_RPC_TIMEOUT
from gateway.schemas import PageQuery

# The multipart envelope around a file of the largest size allowed: sales
# refuses a file over MAX_ATTACHMENT_BYTES with a 422 naming it; a body much
# larger than that is cut off here with a 413 before it is read.
MAX_UPLOAD_BODY = MAX_ATTACHMENT_BYTES + 64 * 1024
TAGS = ("contracts",)


def contract_filters(request):
    return {name: request.args[name] for name in CONTRACT_FILTERS if name in request.args}


def content_disposition(file_name):
    """attachment; with an ASCII fallback name and the real one (Chinese too) as RFC 6266 filename*."""
    fallback = "".join(char for char in file_name if 32 <= ord(char) < 127 and char not in '"\\;') or "attachment"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(file_name, safe='')}"


def _with_etag(contract):
    return Reply(contract, headers={"ETag": etag(contract["version"])})


def _owner_id(body):
    return body.get("owner_id") if isinstance(body, dict) else None


class ContractRoutes:

    @api("POST", "/contracts", allow=rule("contracts", "create"), body=ContractCreateRequest,
         response=ContractResponse, status=201, headers=(idempotency.HEADER,), tags=TAGS, summary="Draft a contract",
         description="For a customer that is not deleted (422 naming customer_id otherwise), optionally "
                     "naming one of its orders. The contract starts as a draft of the caller.")
    def create_contract(self, request, body):
        def create():
            contract = self.sales.create_contract(body, self._owner_team(_owner_id(body)))
            return Reply(contract, headers={"Location": f"{API_PREFIX}/contracts/{contract['id']}",
                                            "ETag": etag(contract["version"])})
        return self._once(request, body, create)

    @api("GET", "/contracts", allow=rule("contracts", "read"), query=ContractListQuery, response=ContractPage,
         tags=TAGS, summary="Find the contracts the caller may see, newest first")
    def list_contracts(self, request):
        limit, cursor = page_arguments(request)
        return self.sales.list_contracts(contract_filters(request), limit, cursor)

    @api("GET", "/contracts/<contract_id>", allow=rule("contracts", "read"), response=ContractResponse,
         headers=("If-None-Match",), tags=TAGS, summary="One contract")
    def get_contract(self, request, contract_id):
        contract = self.sales.get_contract(contract_id)
        if if_none_match_version(request) == contract["version"]:
            return Reply(status=304, headers={"ETag": etag(contract["version"])})
        return _with_etag(contract)

    @api("PATCH", "/contracts/<contract_id>", allow=rule("contracts", "update"), body=ContractUpdateRequest,
         response=ContractResponse, headers=("If-Match",), tags=TAGS, summary="Change a draft contract",
         description="Only while the contract is a draft (409 naming its status otherwise).")
    def update_contract(self, request, contract_id, body):
        return _with_etag(self.sales.update_contract(contract_id, body, if_match_version(request)))

    @api("POST", "/contracts/<contract_id>/submit", allow=rule("contracts", "submit"), response=ContractResponse,
         tags=TAGS, summary="Send a draft for approval")
    def submit_contract(self, request, contract_id):
        return _with_etag(self.sales.submit_contract(contract_id))

    @api("POST", "/contracts/<contract_id>/approve", allow=rule("contracts", "approve"), response=ContractResponse,
         tags=TAGS, summary="Approve a contract pending approval",
         description="A manager of the owner's team or an admin, never the contract's author (403).")
    def approve_contract(self, request, contract_id):
        return _with_etag(self.sales.approve_contract(contract_id))

    @api("POST", "/contracts/<contract_id>/reject", allow=rule("contracts", "approve"), body=ContractReasonRequest,
         response=ContractResponse, tags=TAGS, summary="Send a contract back to draft, with the reason")
    def reject_contract(self, request, contract_id, body):
        return _with_etag(self.sales.reject_contract(contract_id, body))

    @api("POST", "/contracts/<contract_id>/sign", allow=rule("contracts", "sign"), body=ContractSignRequest,
         response=ContractResponse, tags=TAGS, summary="Record the signature of an approved contract",
         description="A contract whose start date has come becomes active at once; one starting later "
                     "is activated by the daily check on its start date.")
    def sign_contract(self, request, contract_id, body):
        return _with_etag(self.sales.sign_contract(contract_id, body))

    @api("POST", "/contracts/<contract_id>/terminate", allow=rule("contracts", "terminate"), body=ContractReasonRequest,
         response=ContractResponse, tags=TAGS, summary="End a signed or active contract early, with the reason")
    def terminate_contract(self, request, contract_id, body):
        return _with_etag(self.sales.terminate_contract(contract_id, body))

    @api("GET", "/contracts/<contract_id>/history", allow=rule("contracts", "read"), query=PageQuery,
         response=ContractHistoryPage, tags=TAGS,
         summary="Every change of a contract's status: from, to, who, when, newest first")
    def contract_history(self, request, contract_id):
        limit, cursor = page_arguments(request)
        return self.sales.contract_history(contract_id, limit, cursor)

    @api("POST", "/contracts/check-expiry", allow=rule("contracts", "check expiry"), response=ExpiryCheckResponse,
         tags=TAGS, summary="Run the daily contract check now",
         description="Activates signed contracts whose start date came, expires those past their end date, and "
                     "publishes contract.expiring 30, 7 and 1 days before the end (each notice once).")
    def check_contract_expiry(self, request):
        return self.sales.check_contract_expiry()

    # --- attachments -------------------------------------------------------

    @api("POST", "/contracts/<contract_id>/attachments", allow=rule("contract attachments", "create"),
         form=AttachmentUploadForm,
         max_body=MAX_UPLOAD_BODY, response=AttachmentResponse, status=201, headers=(idempotency.HEADER,),
         tags=TAGS, summary="Attach a file to a contract (multipart/form-data, at most 20 MB)")
    def add_contract_attachment(self, request, contract_id, form, files):
        upload = files.get("file")
        if upload is None:
            raise ValidationFailed("Attach the file.", {"file": ["Missing: send the file as 'file'."]})
        content = upload.read()
        # Idempotency-Key compares requests by fingerprint: the file's digest stands for the file.
        fingerprint_body = {"file": hashlib.sha256(content).hexdigest(), "file_name": upload.filename}

        def add():
            attachment = self.sales.call_within(
                FILE_RPC_TIMEOUT, "add_contract_attachment", contract_id,
                base64.b64encode(content).decode("ascii"), upload.filename, upload.mimetype or None)
            location = f"{API_PREFIX}/contracts/{contract_id}/attachments/{attachment['id']}/content"
            return Reply(attachment, status=201, headers={"Location": location})
        return self._once(request, fingerprint_body, add)

    @api("GET", "/contracts/<contract_id>/attachments", allow=rule("contract attachments", "read"),
         response=AttachmentList, tags=TAGS, summary="The files of a contract (metadata)")
    def list_contract_attachments(self, request, contract_id):
        return self.sales.list_contract_attachments(contract_id)

    @api("GET", "/contracts/<contract_id>/attachments/<attachment_id>/content", allow=rule("contract attachments",
         "read"), tags=TAGS, downloads=("application/octet-stream",), summary="Download a contract's file",
         description="The bytes as uploaded, checked against their SHA-256 checksum on the way out.")
    def contract_attachment_content(self, request, contract_id, attachment_id):
        found = self.sales.call_within(FILE_RPC_TIMEOUT, "contract_attachment_content", contract_id, attachment_id)
        return Response(base64.b64decode(found["content"]), content_type=found["content_type"], headers={
            "Content-Disposition": content_disposition(found["file_name"]),
            # Served from the API's origin: never let a browser run an uploaded page.
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox",
            "X-Checksum-SHA256": found["checksum"],
        })

    @api("DELETE", "/contracts/<contract_id>/attachments/<attachment_id>", allow=rule("contract attachments",
         "delete"), status=204, tags=TAGS, summary="Remove a file from a draft contract")
    def delete_contract_attachment(self, request, contract_id, attachment_id):
        self.sales.delete_contract_attachment(contract_id, attachment_id)
