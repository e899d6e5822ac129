"""`text-recognizer deploy` against moto's AWS emulator on 127.0.0.1, and the Dockerfile under hadolint.

First deploy (creates repository, role, function, URL), second deploy (updates to a newly pushed image,
adds the monitoring permission), a switch to AWS_IAM auth, the clear error for an image tag that was
never pushed, and missing credentials.

Run: .venv/bin/pytest tests/test_deploy.py -p no:cacheprovider   (about 30 s on 2 cores)
"""

import json
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from text_recognizer import deploy as deploy_module
from text_recognizer.deploy import (
    BASIC_EXECUTION_POLICY,
    MONITORING_POLICY_NAME,
    DeployConfig,
    DeployError,
    deploy,
    main,
)

ROOT = Path(__file__).resolve().parents[1]
REGION = "eu-west-1"


@pytest.fixture
def aws(moto_endpoint, monkeypatch):
    "Fake credentials and the emulator's endpoint in the environment; boto3 clients for the checks."
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "TEXT_RECOGNIZER_MONITORING_S3"):
        monkeypatch.delenv(key, raising=False)
    for key, value in {"AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(key, value)
    session = boto3.session.Session(region_name=REGION)
    return {name: session.client(name) for name in ("ecr", "iam", "lambda")}


def push_fake_image(ecr, repository: str, tag: str, layer: str) -> str:
    "'Push' an image to moto's ECR by putting a manifest; returns its digest."
    try:
        ecr.create_repository(repositoryName=repository)
    except ecr.exceptions.RepositoryAlreadyExistsException:
        pass
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1000,
                           "digest": "sha256:" + "c" * 64},
                "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 5000,
                            "digest": "sha256:" + layer * 64}]}
    return ecr.put_image(repositoryName=repository, imageManifest=json.dumps(manifest), imageTag=tag)["image"]["imageId"]["imageDigest"]


def statements(lambda_client, name: str) -> dict:
    try:
        policy = json.loads(lambda_client.get_policy(FunctionName=name)["Policy"])
    except lambda_client.exceptions.ResourceNotFoundException:
        return {}
    return {s["Sid"]: s for s in policy["Statement"]}


def test_first_deploy_then_update_then_private(aws, capsys):
    config = DeployConfig(region=REGION, function_name="reader", repository="reader-images", image_tag="v1",
                          role_name="reader-role")
    first_digest = push_fake_image(aws["ecr"], "reader-images", "v1", "1")

    first = deploy(config, push=False)
    out = capsys.readouterr()
    assert first["action"] == "created" and first["url"].startswith("https://")
    assert "docker push" in out.out and first["url"] in out.out  # no docker engine here: the commands are printed
    assert "PUBLIC" in out.err  # AuthType NONE is announced loudly
    function = aws["lambda"].get_function(FunctionName="reader")["Configuration"]
    assert function["PackageType"] == "Image" and function["State"] == "Active"
    assert (function["MemorySize"], function["Timeout"]) == (2048, 30)
    assert aws["lambda"].get_function(FunctionName="reader")["Code"]["ImageUri"].endswith("@" + first_digest)
    role = aws["iam"].get_role(RoleName="reader-role")["Role"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "lambda.amazonaws.com"}
    attached = aws["iam"].list_attached_role_policies(RoleName="reader-role")["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [BASIC_EXECUTION_POLICY]
    assert aws["iam"].list_role_policies(RoleName="reader-role")["PolicyNames"] == []  # nothing more than logs
    assert aws["lambda"].get_function_url_config(FunctionName="reader")["AuthType"] == "NONE"
    public = statements(aws["lambda"], "reader")["FunctionURLAllowPublicAccess"]
    assert public["Action"] == "lambda:InvokeFunctionUrl" and public["Principal"] in ("*", {"AWS": "*"})

    # a new image under the same tag, and monitoring switched on: the second run updates in place
    second_digest = push_fake_image(aws["ecr"], "reader-images", "v1", "2")
    config.monitoring_s3 = "s3://reader-monitoring/records"
    second = deploy(config, push=False)
    assert second["action"] == "updated" and second["url"] == first["url"]
    assert aws["lambda"].get_function(FunctionName="reader")["Code"]["ImageUri"].endswith("@" + second_digest)
    function = aws["lambda"].get_function(FunctionName="reader")["Configuration"]
    assert function["Environment"]["Variables"] == {"TEXT_RECOGNIZER_MONITORING_S3": "s3://reader-monitoring/records"}
    policy = aws["iam"].get_role_policy(RoleName="reader-role", PolicyName=MONITORING_POLICY_NAME)["PolicyDocument"]
    policy = json.loads(policy) if isinstance(policy, str) else policy
    assert policy["Statement"] == [{"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::reader-monitoring/records/*"}]
    assert len(aws["lambda"].list_functions()["Functions"]) == 1
    policy = json.loads(aws["lambda"].get_policy(FunctionName="reader")["Policy"])
    assert len(policy["Statement"]) == len(deploy_module.PUBLIC_STATEMENTS)  # not added twice

    # private: AWS_IAM auth, no public statements; monitoring off removes its permission
    config.monitoring_s3, config.auth_type = None, "AWS_IAM"
    third = deploy(config, push=False)
    assert third["action"] == "updated"
    assert aws["lambda"].get_function_url_config(FunctionName="reader")["AuthType"] == "AWS_IAM"
    assert not set(statements(aws["lambda"], "reader")) & set(deploy_module.PUBLIC_STATEMENTS)
    assert aws["iam"].list_role_policies(RoleName="reader-role")["PolicyNames"] == []


def test_missing_image_is_a_clear_error(aws, capsys):
    push_fake_image(aws["ecr"], "other-images", "v1", "3")
    with pytest.raises(DeployError) as caught:
        deploy(DeployConfig(region=REGION, function_name="never", repository="other-images", image_tag="v2"), push=False)
    message = str(caught.value)
    assert "no image tagged 'v2' in ECR repository 'other-images'" in message and "docker push" in message
    assert "never" not in [f["FunctionName"] for f in aws["lambda"].list_functions()["Functions"]]
    # the CLI says the same and exits 1; a repository that does not exist yet is created first
    code = main(["--region", REGION, "--function-name", "never", "--repository", "brand-new", "--image-tag", "v1", "--no-push"])
    assert code == 1 and "no image tagged 'v1' in ECR repository 'brand-new'" in capsys.readouterr().err
    assert aws["ecr"].describe_repositories(repositoryNames=["brand-new"])["repositories"]


def test_cli_deploys_with_names_from_the_environment(aws, monkeypatch, capsys):
    push_fake_image(aws["ecr"], "env-images", "prod", "4")
    monkeypatch.setenv("TEXT_RECOGNIZER_FUNCTION", "env-reader")
    monkeypatch.setenv("TEXT_RECOGNIZER_ECR_REPOSITORY", "env-images")
    monkeypatch.setenv("TEXT_RECOGNIZER_IMAGE_TAG", "prod")
    assert main(["--no-push"]) == 0
    url = aws["lambda"].get_function_url_config(FunctionName="env-reader")["FunctionUrl"]
    assert url in capsys.readouterr().out


def test_missing_credentials_are_a_clear_error(monkeypatch, tmp_path):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    with pytest.raises(DeployError, match="no AWS credentials"):
        deploy(DeployConfig(region=REGION), push=False)


def test_dockerfile_is_clean_under_hadolint():
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run([str(hadolint), str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=public.ecr.aws/lambda/python:3.11" in dockerfile
    assert 'CMD ["text_recognizer.serverless.handler"]' in dockerfile
    assert "lightning" not in dockerfile and "wandb" not in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "nbs", "labs", "tests", ".git"} <= {line.strip("/") for line in ignored}
