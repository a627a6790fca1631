"""Answers from Entra ID and Azure Resource Manager, read by their codes.

Only an answer that names its cause may stop other hosts (``fail_run``): an AADSTS code that says
the secret, app, tenant or certificate is wrong, or an ARM error code that says the role, the
provider registration, a policy or the resource group is the problem. Each such pattern names the
scope the cause is about (:data:`~fleet.azcm.pattern_model.SP_SCOPE` ...), so the breaker stops
only hosts that share it. Fix texts may hold ``{placeholders}`` the classifier fills from the
message (``denied_action``, ``arm_scope``, ``policy_assignment``); a missing one reads "(see the
message)".
"""

from __future__ import annotations

from fleet.azcm.catalog import (
    ARM_ERRORS_URL,
    CLOCK_URL,
    ENTRA_ERRORS_URL,
    PERMISSIONS_URL,
    POLICY_URL,
    PROVIDERS_URL,
    RG_NOT_FOUND_URL,
    ROLES_URL,
    THROTTLING_URL,
)
from fleet.azcm.diagnosis import FAIL_HOST, FAIL_RUN, RETRY, Category
from fleet.azcm.pattern_model import (
    RG_SCOPE,
    SP_SCOPE,
    SUBSCRIPTION_SCOPE,
    MessagePattern,
)
from fleet.azcm.pattern_model import pattern as _p

C = Category

CLOCK_FIX = (
    "Set the host's clock (chrony or ntpd on Linux, w32time on Windows: `w32tm /resync`), then "
    "rerun the host."
)

ENTRA: tuple[MessagePattern, ...] = (
    _p("aad_invalid_secret", r"AADSTS7000215|Invalid client secret (?:is )?provided",
       ("aadsts7000215", "invalid client secret"), C.CREDENTIALS, FAIL_RUN,
       "Entra ID rejected the service principal secret: it is not a valid secret of this app "
       "(a secret id pasted instead of its value is a classic).",
       "Put the secret's value (not its id) in the secret store the inventory names, then rerun "
       "the failed hosts; every host of this service principal uses it.",
       "Failed to acquire authorization token from SPN: Invalid client secret is provided",
       doc_url=ENTRA_ERRORS_URL, scope=SP_SCOPE),
    _p("aad_expired_secret", r"AADSTS7000222|client secret keys? (?:for|of) .{0,160}expired",
       ("aadsts7000222", "expired"), C.CREDENTIALS, FAIL_RUN,
       "The service principal's client secret has expired.",
       "Create a new client secret for the app, put its value in the secret store, rerun.",
       "AADSTS7000222: The provided client secret keys for app "
       "'00000000-0000-0000-0000-000000000000' are expired.", doc_url=ENTRA_ERRORS_URL,
       scope=SP_SCOPE),
    _p("aad_app_not_found",
       r"AADSTS700016|Application with identifier '[^']{0,128}' (?:was not|wasn't) found",
       ("aadsts700016", "application with identifier"), C.CREDENTIALS, FAIL_RUN,
       "The client id is not an application in this tenant (wrong id, a display name used as "
       "the id, or the wrong tenant).",
       "Use the app (client) id of the service principal and the tenant it lives in.",
       "Failed to acquire authorization token from SPN: Application with identifier "
       "'00000000-0000-0000-0000-000000000000' wasn't found in the directory "
       "'00000000-0000-0000-0000-000000000000'.", doc_url=ENTRA_ERRORS_URL, scope=SP_SCOPE),
    _p("aad_tenant_not_found", r"AADSTS90002|Tenant '[^']{0,128}' not found",
       ("aadsts90002", "tenant '"), C.CREDENTIALS, FAIL_RUN,
       "The tenant id does not name an existing tenant in this cloud.",
       "Correct tenant_id (and the cloud, if the tenant is sovereign).",
       "AADSTS90002: Tenant '11111111-2222-3333-4444-555555555555' not found.",
       doc_url=ENTRA_ERRORS_URL, scope=SP_SCOPE),
    _p("aad_certificate_not_registered", r"AADSTS700027|Client assertion failed signature",
       ("aadsts700027", "assertion failed signature"), C.CREDENTIALS, FAIL_RUN,
       "Entra ID does not know the certificate the service principal signed with (it is not "
       "registered on the app, or the key does not match it).",
       "Upload the certificate's public part to the app registration (Certificates & secrets), "
       "or point the inventory at the certificate that is registered; then rerun.",
       "AADSTS700027: Client assertion failed signature validation.", doc_url=ENTRA_ERRORS_URL,
       scope=SP_SCOPE),
    _p("aad_wrong_tenant_token",
       r"InvalidAuthenticationTokenTenant|token is from the wrong issuer",
       ("invalidauthenticationtokentenant", "wrong issuer"), C.CREDENTIALS, FAIL_RUN,
       "The service principal signed in to a tenant other than the one the subscription belongs "
       "to.",
       "Use the tenant id of the subscription's directory (and a service principal from it).",
       "Code: InvalidAuthenticationTokenTenant Message: The access token is from the wrong "
       "issuer 'https://sts.windows.net/t1/'. It must match the tenant "
       "'https://sts.windows.net/t2/' associated with this subscription.",
       doc_url=ENTRA_ERRORS_URL, scope=SP_SCOPE),
    # Time: the host's clock is wrong, not the credential.
    _p("aad_clock_skew",
       r"AADSTS700024|assertion is not within its valid time range",
       ("aadsts700024", "valid time range"), C.HOST_PREREQUISITE, FAIL_HOST,
       "Entra ID refused the sign-in because its time window does not match: the host's clock "
       "is off.", CLOCK_FIX,
       "AADSTS700024: Client assertion is not within its valid time range. Current time: "
       "2026-12-02T10:00:00Z, assertion valid from 2026-12-02T11:00:00Z",
       doc_url=CLOCK_URL),
)

ARM: tuple[MessagePattern, ...] = (
    _p("arm_token_rejected",
       r"(?:Expired|Invalid)AuthenticationToken\b|access token (?:has )?expired",
       ("authenticationtoken", "token has expired", "token expired"), C.CREDENTIALS,
       FAIL_HOST,
       "ARM rejected the access token (expired, or not issued for ARM).",
       "Check the host's clock first (a clock ahead makes fresh tokens look expired); otherwise "
       "rerun the host so the agent signs in again.",
       "Code: ExpiredAuthenticationToken Message: The access token expiry UTC time is earlier "
       "than current UTC time.", code="AZCM0012", doc_url=ENTRA_ERRORS_URL),
    _p("arm_provider_not_registered",
       r"MissingSubscriptionRegistration|(?:is not|isn't) registered to use namespace",
       ("missingsubscriptionregistration", "registered to use namespace"),
       C.PERMISSIONS, FAIL_RUN,
       "The subscription has not registered the Azure Arc resource providers.",
       "Register Microsoft.HybridCompute, Microsoft.GuestConfiguration and "
       "Microsoft.HybridConnectivity once (`az provider register --namespace ...`), then rerun.",
       "Code: MissingSubscriptionRegistration httpStatusCode:409 The subscription is not "
       "registered to use namespace 'Microsoft.HybridCompute'.", doc_url=PROVIDERS_URL,
       scope=SUBSCRIPTION_SCOPE),
    _p("arm_policy_denied", r"RequestDisallowedByPolicy|was disallowed by policy",
       ("requestdisallowedbypolicy", "disallowed by policy"), C.PERMISSIONS, FAIL_RUN,
       "An Azure Policy assignment denies creating the Arc machine here (this is a policy deny, "
       "not a missing role).",
       "Ask the policy owner about assignment '{policy_assignment}': change the request to "
       "comply (region, tags, name) or get an exemption for this resource group; no role "
       "assignment fixes a policy deny.",
       "Code: RequestDisallowedByPolicy Message: Resource 'web01' was disallowed by policy. "
       "Policy identifiers: '[{\"policyAssignment\":{\"name\":\"Allowed locations\",\"id\":"
       "\"/subscriptions/s1/providers/Microsoft.Authorization/policyAssignments/a1\"}}]'.",
       doc_url=POLICY_URL, scope=RG_SCOPE),
    _p("arm_throttled",
       r"TooManyRequests|(?:Subscription|Resource|Tenant)RequestsThrottled"
       r"|(?:status ?code|httpStatusCode|status)\W{0,3}429\b|\b429 Too Many Requests"
       r"|excessive volume of traffic|try again after '?\d{1,6}'? seconds",
       ("toomanyrequests", "throttled", "429", "excessive volume", "try again after"),
       C.THROTTLED, RETRY,
       "ARM throttled the requests: too many writes for this subscription or principal.",
       "arcfleet waits the time ARM names (Retry-After, or 'try again after N seconds', with "
       "jitter) and retries; if it keeps happening lower `pacing.connect_rate_per_s` in the "
       "playbook or `--connect-rate`.",
       "Failed to create resource: Code=TooManyRequests Status Code=429 Retry-After: 17",
       doc_url=THROTTLING_URL),
    _p("arm_server_error",
       r"\b(?:InternalServerError|ServiceUnavailable|GatewayTimeout|BadGateway)\b"
       r"|(?:status ?code|httpStatusCode)\W{0,3}50[0234]\b",
       ("internalservererror", "serviceunavailable", "gatewaytimeout", "badgateway", "500",
        "502", "503", "504"),
       C.NETWORK, RETRY,
       "Azure Resource Manager answered with a server error (5xx): a passing fault on Azure's "
       "side.", "arcfleet retries with backoff; if it persists, check Azure status for the "
       "region.", "Code: ServiceUnavailable Message: The service is temporarily unavailable. "
       "httpStatusCode:503", doc_url=ARM_ERRORS_URL),
    _p("arm_resource_group_write_denied",
       r"perform action 'Microsoft\.Resources/subscriptions/resource[gG]roups/write'",
       ("resourcegroups/write",), C.INVALID_INPUT, FAIL_RUN,
       "The resource group does not exist, and the service principal may not create it.",
       "Create the resource group named in the inventory (or correct resource_group); the "
       "onboarding role may create machines in a group, not the group itself.",
       "does not have authorization to perform action "
       "'Microsoft.Resources/subscriptions/resourcegroups/write' over scope "
       "'/subscriptions/s1/resourcegroups/rg-missing'", doc_url=RG_NOT_FOUND_URL,
       scope=RG_SCOPE, field="resource_group"),
    _p("arm_private_link_read_denied",
       r"perform action 'Microsoft\.HybridCompute/privateLinkScopes/[^']{0,64}'",
       ("privatelinkscopes",), C.PERMISSIONS, FAIL_RUN,
       "The service principal may not read the Private Link Scope the hosts connect through.",
       "Grant read on the Private Link Scope '{arm_scope}' (its action "
       "'{denied_action}'; e.g. Reader on that scope): the onboarding role on the machines' "
       "resource group does not cover a scope elsewhere.",
       "does not have authorization to perform action "
       "'Microsoft.HybridCompute/privateLinkScopes/read' over scope '/subscriptions/s1/"
       "resourceGroups/net/providers/Microsoft.HybridCompute/privateLinkScopes/pls1'",
       doc_url=PERMISSIONS_URL, scope=RG_SCOPE),
    _p("arm_delete_denied",
       r"perform action 'Microsoft\.HybridCompute/machines/delete'",
       ("machines/delete",), C.PERMISSIONS, FAIL_RUN,
       "The service principal may not delete the Arc machine resource.",
       "The 'Azure Connected Machine Onboarding' role cannot delete machines: give the principal "
       "'Azure Connected Machine Resource Administrator' on '{arm_scope}' for offboarding, or "
       "delete the resource yourself and run `azcmagent disconnect --force-local-only`.",
       "does not have authorization to perform action "
       "'Microsoft.HybridCompute/machines/delete' over scope '/subscriptions/s1/resourceGroups/"
       "rg1/providers/Microsoft.HybridCompute/machines/web01'", doc_url=ROLES_URL,
       scope=RG_SCOPE),
    _p("arm_authorization_failed",
       r"AuthorizationFailed|does not have authorization to perform action",
       ("authorizationfailed", "does not have authorization"), C.PERMISSIONS, FAIL_RUN,
       "The service principal lacks the role that allows this action in this scope.",
       "Assign the 'Azure Connected Machine Onboarding' role to the service principal on the "
       "resource group of '{arm_scope}' (the denied action was '{denied_action}'), wait a few "
       "minutes for it to apply, rerun.",
       "Get ARM Resource Response: The client 'arc-onboarding' with object id "
       "'00000000-0000-0000-0000-000000000000' does not have authorization to perform action "
       "'Microsoft.HybridCompute/machines/read' over scope '/subscriptions/"
       "00000000-0000-0000-0000-000000000000/resourcegroups/rg/providers/"
       "Microsoft.HybridCompute/machines/web01' or the scope is invalid. Status Code=403",
       doc_url=PERMISSIONS_URL, scope=RG_SCOPE),
    _p("arm_forbidden_unexplained",
       r"(?:status ?code|httpStatusCode)\W{0,3}403\b",
       ("403",), C.PERMISSIONS, FAIL_HOST,
       "ARM answered 403 without saying which action was denied.",
       "Check the service principal's role assignments on the resource group "
       "('Azure Connected Machine Onboarding') and any proxy in front of management.azure.com.",
       "Failed to create resource: Status Code=403", doc_url=PERMISSIONS_URL),
    _p("arm_resource_group_not_found",
       r"ResourceGroupNotFound|Resource group '[^']{0,128}' could not be found",
       ("resourcegroupnotfound", "resource group '"), C.INVALID_INPUT, FAIL_RUN,
       "The resource group does not exist in this subscription.",
       "Create the resource group (or correct resource_group in the inventory), then rerun.",
       "Code: ResourceGroupNotFound Message: Resource group 'rg-missing' could not be found.",
       doc_url=RG_NOT_FOUND_URL, scope=RG_SCOPE, field="resource_group"),
    _p("arm_location_not_available",
       r"LocationNotAvailableForResourceType|NoRegisteredProviderFound",
       ("locationnotavailable", "noregisteredproviderfound"), C.INVALID_INPUT, FAIL_HOST,
       "Azure Arc machines cannot be created in the requested region.",
       "Set location in the inventory to a region Azure Arc-enabled servers support.",
       "Code: LocationNotAvailableForResourceType Message: The provided location 'westeuropa' "
       "is not available for resource type 'Microsoft.HybridCompute/machines'.",
       doc_url=ARM_ERRORS_URL, field="location"),
    _p("arm_invalid_tags",
       r"InvalidTagName(?:Characters|Length)?|InvalidTagValue\w{0,16}|TooManyTags",
       ("invalidtag", "toomanytags"), C.INVALID_INPUT, FAIL_HOST,
       "ARM rejected a tag (a name with a character ARM forbids, or too long / too many).",
       "Correct the tags in the inventory: names may not contain < > % & \\ ? /, at most 512 "
       "characters, at most 50 tags.",
       "Code: InvalidTagNameCharacters Message: The tag names 'cost/center' have reserved "
       "characters '<,>,%,&,\\,?,/' or control characters.", doc_url=ARM_ERRORS_URL,
       field="tags"),
    _p("arm_invalid_resource_name",
       r"InvalidResourceName|InvalidParameter\b|BadRequestFormat",
       ("invalidresourcename", "invalidparameter", "badrequestformat"), C.INVALID_INPUT,
       FAIL_HOST, "ARM rejected a value of the request (400 validation error).",
       "Correct the value the message names (resource name, tags, location) in the inventory.",
       "Code: InvalidResourceName Message: Resource name web_01- is invalid.",
       doc_url=ARM_ERRORS_URL, field="resource_name"),
)
