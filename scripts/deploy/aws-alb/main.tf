# ChatPulse behind an AWS Application Load Balancer (Terraform snippet: wire in your
# VPC, subnets, security groups, certificate and instances/ASG).
# Each node: server.trusted_proxies = the VPC CIDR (the ALB's addresses change),
# server.public_url = "https://chatpulse.example.com", shutdown.drain_delay = "15s".

variable "vpc_id" { type = string }
variable "public_subnet_ids" { type = list(string) }
variable "alb_security_group_id" { type = string }
variable "certificate_arn" { type = string }

resource "aws_lb" "chatpulse" {
  name               = "chatpulse"
  load_balancer_type = "application"
  internal           = false
  subnets            = var.public_subnet_ids
  security_groups    = [var.alb_security_group_id]
  # Default 60 s cuts quiet overlay WebSockets (the guide's "times out after 60 s").
  idle_timeout = 3600
}

resource "aws_lb_target_group" "chatpulse" {
  name        = "chatpulse"
  port        = 8080
  protocol    = "HTTP"
  vpc_id      = var.vpc_id
  target_type = "instance" # "ip" for Fargate

  # /health/ready is 503 while a node starts or drains: the ALB stops routing to it
  # within 2 x 5 s, inside shutdown.drain_delay (15 s).
  health_check {
    path                = "/health/ready"
    matcher             = "200"
    interval            = 5
    timeout             = 4
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }

  # Longer than drain_delay + the time overlays need to get close 1001.
  deregistration_delay = 30

  # Off: overlays reconnect to any node, and stickiness keeps them piled on the
  # oldest node after a deploy. Turn on (lb_cookie, 86400) only if something
  # needs a client to stay on one node.
  stickiness {
    enabled         = false
    type            = "lb_cookie"
    cookie_duration = 86400
  }
}

resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.chatpulse.arn
  port              = 80
  protocol          = "HTTP"
  default_action {
    type = "redirect"
    redirect {
      port        = "443"
      protocol    = "HTTPS"
      status_code = "HTTP_301"
    }
  }
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.chatpulse.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.chatpulse.arn
  }
}
